"""The probes' common start: a run's training state as its checkpoint holds it."""

import torch


def training_state(m, args, ck):
    """Online and target critics, Adam with its moments, and the replay buffer of checkpoint `ck` (script module `m`)."""
    obs_dim, act_dim = ck["rb"]["obs"].shape[1], ck["rb"]["actions"].shape[1]
    qf = m.CriticEnsemble(obs_dim, act_dim)
    qf.load_state_dict(ck["qf"])
    qt = m.CriticEnsemble(obs_dim, act_dim)
    qt.load_state_dict(ck["qf_target"])
    opt = torch.optim.Adam(qf.parameters(), lr=args.learning_rate)
    opt.load_state_dict(ck["optimizer"])
    rb = m.ReplayBuffer(args.buffer_size, obs_dim, act_dim, "cpu")
    rb.load_state_dict(ck["rb"])
    return qf, qt, opt, rb
