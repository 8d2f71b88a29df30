"""The packaged Hydra configs of `m3leo train` (YAML only: ``train.yaml``, ``task/``,
``input/``, ``experiment/<task>/<input>.yaml``); read through Hydra's compose API."""
