"""The application's use cases, between the adapters and the store.

:mod:`labelwise.store` holds the tables, the migrations and the data access (queries and
single-purpose writes); the modules here combine them into what a person asks for: create or
open a project (:mod:`~labelwise.services.setup`), import a file
(:mod:`~labelwise.services.transfer`, with :mod:`~labelwise.services.import_checks`,
:mod:`~labelwise.services.label_studio` and :mod:`~labelwise.services.restore`), export it
(:mod:`~labelwise.services.export`, :mod:`~labelwise.services.export_formats`), back it up
(:mod:`~labelwise.services.backup`), triage new items (:mod:`~labelwise.services.triage`) and
compute the dashboard (:mod:`~labelwise.services.dashboard`). The adapters (the command line,
:mod:`labelwise.cli`, and the web server, :mod:`labelwise.server`) call these; nothing here
imports from them.
"""
