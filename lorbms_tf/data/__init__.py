"""Data sources, preprocessing, input pipelines and the embedded ``lorbms_scenes`` dataset.

Importing this package registers the ``lorbms_scenes`` tfds builder.
"""

from lorbms_tf.data import scenes_builder  # registers lorbms_scenes
from lorbms_tf.data.pipeline import (center_examples, eval_dataset, load_images_array,
                                     probe_dataset, train_dataset)
from lorbms_tf.data.sources import (DatasetSpec, DecodeOptions, SkipCounter, list_image_files,
                                    load_source, parse_dataset_spec, stl10_fold_ids,
                                    write_tfrecords)
