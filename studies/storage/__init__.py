"""Where studies live and how they are read: storage URLs opened safely (backends), the index that
makes a journal fast to read, the views' reader, and the artifact store of kept weights.
May use only the top-level modules (errors, measures, settings, space); no other room."""
