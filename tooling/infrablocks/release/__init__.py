"""Released block versions are frozen: their code's digest, the lock file, cutting new versions.

- :mod:`~infrablocks.release.digest`: a block version's code as digests (one per file Terraform
  sees, one for the whole) and a deployment's inputs as digests;
- :mod:`~infrablocks.release.lockfile`: ``blocks.lock``, one digest per released version,
  written by ``doit release`` and committed with the repository;
- :mod:`~infrablocks.release.frozen`: which released or deployed versions were edited since
  (``doit check``, ``doit status``, ``doit create``);
- :mod:`~infrablocks.release.cut`: ``doit new-version``, a new version cut from the newest one.

See docs/environments.md ("Released versions are frozen").
"""
