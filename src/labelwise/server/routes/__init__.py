"""One router per resource: pages, labeling, projects."""
