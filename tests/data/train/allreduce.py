"""A small real training job for tests: a linear model trained with DDP over gloo.

Prints `step N loss X` on rank 0 and `final weights_sha256 <hash>` on every rank, and
checkpoints with gpuhive.train-free plain torch so the test does not depend on them.
Args: STEPS [SLEEP_PER_STEP].
"""

import hashlib
import os
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
pause = float(sys.argv[2]) if len(sys.argv) > 2 else 0.0
# a peer that vanishes without a FIN must fail the collective soon, not in 30 minutes
dist.init_process_group("gloo", timeout=timedelta(seconds=60))
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
gen = torch.Generator().manual_seed(1234 + rank)
true_w = torch.arange(8, dtype=torch.float32)
for step in range(steps):
    x = torch.randn(32, 8, generator=gen)
    loss = ((model(x).squeeze(1) - x @ true_w) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    if rank == 0 and step % 5 == 0:
        print(f"step {step} loss {loss.item():.4f} world {world}", flush=True)
    time.sleep(pause)
blob = b"".join(p.detach().numpy().tobytes() for p in model.module.state_dict().values())
print(f"final weights_sha256 {hashlib.sha256(blob).hexdigest()} node "
      f"{os.environ.get('GPUHIVE_NODE_NAME')}", flush=True)
dist.destroy_process_group()
