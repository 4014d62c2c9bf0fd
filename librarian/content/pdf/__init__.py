"""Text of PDF documents, read in a child process with limits."""
