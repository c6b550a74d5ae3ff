"""One module per technique chapter, named by the chapter's slug: ``notebooks/NN_<slug>.ipynb``
imports its code from ``diaropt.techniques.<slug>`` (the guide's own numbering is in the table
of ``book/methods.md``)."""
