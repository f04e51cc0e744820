"""Teachers that write reasoning traces for ThinkRec's training rows."""
