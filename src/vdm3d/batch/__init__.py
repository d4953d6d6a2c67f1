"""Batch runs: many cases of any job from one manifest (:mod:`.cases`), run on Ray or one after
another, skipping finished cases and resuming broken ones (:mod:`.runner`)."""
