"""Render a dataset on a Ray cluster (`python -m backend generate --cluster ADDRESS`), docs/cluster.md.

- `connection`: the address forms, the environment Ray needs (loopback, no usage statistics,
  token), connecting within seconds or failing with a one-line error;
- `scene_pack`: the driver's scene with its textures packed into one .blend, as bytes;
- `render_worker`: the Ray actor, one bpy session per worker, rendering samples with the add-on's
  own DatasetJob and returning the files as bytes;
- `dataset`: the driver loop that hands out samples, re-queues those of a dead worker and commits
  each returned sample into the dataset folder.

Ray is imported only inside these modules' functions, and only when `--cluster` is given.
"""
