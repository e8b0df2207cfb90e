"""Reading data files: datasets, columns, tables, streams and media."""
