"""Safety alignment pieces below the methods: the shipped safety set (:mod:`.dataset`, content in
:mod:`.items`), the refusal classifier (:mod:`.refusal`), safety rewards/costs (:mod:`.rewards`) and a linear
probe of hidden states (:mod:`.probe`).
The data layouts live in :mod:`alignkit.data.safety`, the losses in :mod:`alignkit.losses.safety`."""
