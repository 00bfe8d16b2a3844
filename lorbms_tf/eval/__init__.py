"""Evaluation: image quality (TF-GAN FID/IS/KID), linear probes, object metrics, the report.

Modules (imported on demand, so ``import lorbms_tf.eval`` stays cheap):

* ``tfgan_compat``: TF-GAN's ``classifier_metrics`` on TF >= 2.16.
* ``image_metrics``: FID/IS/KID with an Inception SavedModel or the "scenes FID" classifier.
* ``linear_probe``: the STL-10 protocol and the lorbms_scenes probes.
* ``object_metrics``: object-transfer fidelity and mask-classifier accuracy.
* ``report``: metrics.json, report.md, plots and image grids.

The command line is ``python -m lorbms_tf.evaluate`` (and ``lorbms_tf.render``).
"""
