"""Cross-block planning: one Terraform plan for a whole closure, saved and applied as reviewed.

- :mod:`~infrablocks.planning.compose`: the blocks as modules of one temporary root module,
  their deployed states merged under module addresses;
- :mod:`~infrablocks.planning.split`: the composed plan split back per block;
- :mod:`~infrablocks.planning.crossplan`: `doit plan` (:func:`plan_environment`);
- :mod:`~infrablocks.planning.planfile`: the saved plan file and the environment fingerprint;
- :mod:`~infrablocks.planning.apply`: `doit apply FILE`.

See docs/planning.md.
"""
