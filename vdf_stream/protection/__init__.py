"""The protection itself, with no I/O: its options, validated once (:mod:`.options`), the
protector, describe -> decide -> optimise -> apply (:mod:`.protector`), the bounded
perturbation (:mod:`.perturb`, and :mod:`.apply_cuda` on a GPU), the objective and its
optimiser (:mod:`.objective`) and keyframe sharing (:mod:`.sharing`). The ``vdf`` filter and
live mode both run :class:`.protector.Protector`."""
