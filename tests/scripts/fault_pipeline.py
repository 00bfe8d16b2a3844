"""The local pipeline as one process, for tests/test_faults.py (which SIGKILLs it).

  python tests/scripts/fault_pipeline.py CONFIG.json

CONFIG.json holds components.pipeline.PipelineConfig's fields. The pusher's validation gate
(three more processes: its own tests are in test_export.py) answers "valid" here, so that the
many kills and reruns stay fast; everything else is the real chain, child processes included.
"""

import json
import os
import sys

# A child step that reaches the kill point kills this process, the pipeline's root, with it.
os.environ["LORBMS_KILL_ROOT"] = str(os.getpid())

from components import pipeline  # noqa: E402
from lorbms_tf import export  # noqa: E402


def main(path):
  with open(path) as f:
    fields = json.load(f)
  export.validate_export = lambda export_dir, *args, **kwargs: {"problems": [], "stubbed": True}
  config = pipeline.PipelineConfig(**{k: tuple(v) if isinstance(v, list) else v
                                      for k, v in fields.items()})
  records = pipeline.run_pipeline(config)
  print(json.dumps({"pushed": records["pusher"]["push"]["pushed"],
                    "blessed": records["evaluation"]["blessing"]["blessed"]}))


if __name__ == "__main__":
  main(sys.argv[1])
