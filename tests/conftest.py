import torch

# Unit tests use tiny tensors: one thread avoids oversubscription on small CI machines
# (training tests set their own thread count through the run settings).
torch.set_num_threads(1)
