"""The book: the papermill runner, results and glue, chapter set-up, verdicts and the guide's claims."""
