"""Knowledge transfer (Noroozi et al. 2018): the thesis's evaluation of learned features by
teaching them to a standard AlexNet through k-means pseudo labels.

    python -m lorbms_tf.transfer --workdir=runs/demo/model --features=encoder --clusters=200

Modules:

* ``pseudo_labels``: k-means (faiss) of the teacher's features -> one label per image.
* ``student``: the AlexNet-style ``models.TransferNet`` trained on the pseudo labels.
* ``features``: the teacher's and the student's feature layers, pooled per quadrant.
* ``experiment``: ``TransferConfig`` and ``run_transfer``, the whole experiment.
* ``report``: metrics.json and report.md.

The command line is ``__main__.py`` beside this file (the only place that reads flags); the
pipeline step is ``components/transfer``.
"""
