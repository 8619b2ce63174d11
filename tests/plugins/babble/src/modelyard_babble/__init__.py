"""modelyard-babble: an engine plugin written the way an outside author writes one."""
