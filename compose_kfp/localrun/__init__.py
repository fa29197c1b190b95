"""Running a pipeline on this machine: the task runner (:mod:`.runner`) and the stdlib-only sandbox launcher (:mod:`.sandbox`)."""
