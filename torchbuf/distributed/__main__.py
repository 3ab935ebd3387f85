"""``python -m torchbuf.distributed`` (under ``torchrun``): the ``ddp-bc`` job."""

from torchbuf.distributed.job import main

raise SystemExit(main())
