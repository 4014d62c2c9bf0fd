"""The ``librarian`` command: starting and supervising the processes, and the API client."""
