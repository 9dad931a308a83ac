"""Task definitions: each module holds a task's typed config and its verbs' work."""
