"""One function per gate that computes every number the gate records; the gates only assert."""
