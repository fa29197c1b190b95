"""Running a pipeline on this machine, each task inside its image.

- :mod:`.project`: running a checked project (``run --local``'s one call, :func:`~.project.run_project`):
  the images kfp.lock pins, the layers changed since, the registry options;
- :mod:`.runner`: choosing an executor, preparing, scheduling and running the tasks (:func:`~.runner.run_local`);
- :mod:`.rootfs`: pulling and unpacking the images the ``bwrap``/``chroot`` executors run in;
- :mod:`.results`: the run's values (task results, the run result, progress events);
- :mod:`.report`: the summary table, the failing tasks' log tails, the run's error;
- :mod:`.sandbox`: the stdlib-only sandbox launcher, started as a script by its path.
"""
