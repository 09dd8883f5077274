"""Beyond one process: Ray Data batch scoring (:mod:`plastispoof.scale.ray_scoring`) and torchrun-sharded
evaluation (:mod:`plastispoof.scale.sharding`)."""
