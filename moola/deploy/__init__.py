"""Using what the gates approved: the model file (`model`), which model the evidence supports
(`select`) and scoring new windows with it (`predict`)."""
