"""The molecule model: SMILES tokens, the absorbing-state diffusion (forward masking, the
reverse step and its exact log-density, the sampler) against closed forms, the two losses,
and the adapter (SUBS output, a tiny model that learns two molecules, checkpoints)."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from graftbench.config import ConfigError
from graftbench.finetuning.run_records import flops_per_call
from graftbench.tasks.molecule import masked
from graftbench.tasks.molecule.masked import MaskedScheduler, sample_masked
from graftbench.tasks.molecule.model import MoleculeAdapter, MoleculeModelConfig
from graftbench.tasks.molecule.tokens import MASK, PAD, Vocabulary, tokenize

SMILES = [
    "CC(=O)Oc1ccccc1C(=O)O",  # aspirin
    "C[C@@H](N)C(=O)O",  # L-alanine: a chiral bracket atom
    "Cl/C=C/Br",  # Cl, Br and directional bonds
    "C%10CCCCC%10",  # two-digit ring closure
    "[O-][N+](=O)c1ccc[nH]1",  # charges, aromatic [nH]
    "CC.O#N",  # dot-disconnected, triple bond
]


def binomial_tol(p: float, n: int, sigmas: float = 5.0) -> float:
    return sigmas * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1e-9


# ------------------------------------------------------------------------------- tokens


def test_tokenize_splits_multi_character_tokens():
    assert tokenize("Cl/C=C/Br") == ["Cl", "/", "C", "=", "C", "/", "Br"]
    assert tokenize("C[C@@H](N)C(=O)O")[:3] == ["C", "[C@@H]", "("]
    assert tokenize("C%10CCCCC%10").count("%10") == 2
    assert "".join(tokenize(SMILES[0])) == SMILES[0]


def test_vocabulary_round_trips_and_is_deterministic():
    vocab = Vocabulary.from_smiles(SMILES)
    assert vocab == Vocabulary.from_smiles(list(reversed(SMILES)))
    assert vocab.tokens[:2] == ["<pad>", "<mask>"] and vocab.tokens[2:] == sorted(vocab.tokens[2:])
    ids = vocab.encode(SMILES, 30)
    assert ids.shape == (len(SMILES), 30) and ids.dtype == torch.long
    assert ids[2, len(tokenize(SMILES[2])) :].eq(PAD).all()
    assert vocab.decode(ids) == SMILES
    assert Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict()))) == vocab


def test_tokenizer_errors_name_the_smiles():
    vocab = Vocabulary.from_smiles(SMILES[:1])
    with pytest.raises(ValueError, match=r"'CSi'.*'i'"):
        tokenize("CSi")
    with pytest.raises(ValueError, match=r"'C\[NH'"):
        vocab.encode(["C[NH"], 10)
    with pytest.raises(ValueError, match=r"'CCBr'.*'Br'"):
        vocab.encode(["CCBr"], 10)
    with pytest.raises(ValueError, match=r"'CCCCCC'.*6 tokens, more than length 5"):
        vocab.encode(["CCCCCC"], 5)


def test_decode_of_garbage_never_raises_and_is_never_smiles():
    vocab = Vocabulary.from_smiles(SMILES)
    c, o = vocab.index["C"], vocab.index["O"]
    rows = [[c, MASK, o, PAD], [c, PAD, o, PAD], [c, 999, -3, PAD], [PAD] * 4, [c, o, PAD, PAD]]
    out = vocab.decode(torch.tensor(rows))
    # the molecule ends at the first PAD: what follows is not read
    assert out[:3] == ["C<mask>O", "C", "C<unk:999><unk:-3>"]
    assert out[3:] == ["", "CO"]
    assert vocab.decode([c, o]) == ["CO"]  # one row
    assert vocab.decode([[1.5, "x", None]]) == ["<mask><unk:-1><unk:-1>"]
    assert vocab.decode(torch.tensor(c)) == ["C"] and vocab.decode([]) == []
    g = torch.Generator().manual_seed(0)
    assert all(
        isinstance(s, str) for s in vocab.decode(torch.randint(-5, 60, (50, 8), generator=g))
    )


# -------------------------------------------------------------------------- the schedule


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedule_endpoints(schedule):
    s = MaskedScheduler(1000, schedule)
    a = s.alphas_cumprod
    assert a.dtype == torch.float64 and a.shape == (1000,)
    assert a[-1] == 0.0 and (a[1:] < a[:-1]).all() and 0.99 < a[0] < 1
    assert s.alpha(-1) == 1.0
    if schedule == "linear":
        assert torch.allclose(a, 1 - torch.arange(1, 1001, dtype=torch.float64) / 1000)


@pytest.mark.parametrize("n", [10, 3, 1])
def test_timesteps_start_all_masked_and_end_clean(n):
    s = MaskedScheduler(1000)
    s.set_timesteps(n)
    step = 1000 // n
    assert s.timesteps.tolist() == [999 - i * step for i in range(n)]
    assert [s.prev_timestep(t) for t in s.timesteps[:-1]] == s.timesteps[1:].tolist()
    assert s.prev_timestep(s.timesteps[-1]) == -1  # also for n = 3, where 999 - 3*333 = 0


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_forward_mask_fraction_matches_alpha(schedule):
    s = MaskedScheduler(1000, schedule)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(2, 9, (4000, 8), generator=g)
    x0[:, 6:] = PAD  # PAD is masked like any token
    for t in (0, 250, 700, 998, 999):
        xt = s.add_mask(x0, torch.full((4000,), t), g)
        masked_ = xt == MASK
        p = 1 - s.alpha(t)
        assert abs(masked_.double().mean().item() - p) < binomial_tol(p, x0.numel())
        assert abs(masked_[:, 6:].double().mean().item() - p) < binomial_tol(p, 8000)
        assert (xt[~masked_] == x0[~masked_]).all()
    assert s.add_mask(x0, torch.full((4000,), 999), g).eq(MASK).all()


# ------------------------------------------------------------------------ the reverse step


def test_reverse_step_rates_and_token_law():
    s = MaskedScheduler(1000, "cosine")
    s.set_timesteps(10)
    t = s.timesteps[3]
    a_t, a_s = s.alpha(t), s.alpha(s.prev_timestep(t))
    g = torch.Generator().manual_seed(1)
    n, L, V = 20000, 4, 6
    logits = torch.tensor([0.5, 9.0, 1.0, -1.0, 0.0, 2.0])  # the huge MASK logit is ignored
    x = torch.full((n, L), MASK)
    x[:, 3] = 4  # an unmasked position, against which the logits argue
    nxt = s.step(logits.expand(n, L, V), t, x, g)
    assert (nxt[:, 3] == 4).all()
    unmasked = nxt[:, :3] != MASK
    p = (a_s - a_t) / (1 - a_t)
    assert abs(unmasked.double().mean().item() - p) < binomial_tol(p, 3 * n)
    probs = logits.index_fill(0, torch.tensor([MASK]), -math.inf).softmax(0)
    drawn = nxt[:, :3][unmasked]
    freq = torch.bincount(drawn, minlength=V).double() / len(drawn)
    for v in range(V):
        assert abs(freq[v].item() - probs[v].item()) < binomial_tol(probs[v].item(), len(drawn))
    last = s.step(logits.expand(n, L, V), s.timesteps[-1], x, g)
    assert not (last == MASK).any()


def hand_log_prob(logits, a_t, a_s, x, nxt):
    """log p(nxt | x) written out per position with math, independently of the scheduler."""
    total = 0.0
    for pos, (xi, ni) in enumerate(zip(x, nxt, strict=True)):
        if xi != MASK:
            if ni != xi:
                return -math.inf
            continue
        if ni == MASK:
            total += math.log((1 - a_s) / (1 - a_t)) if a_s < 1 else -math.inf
        else:
            z = sum(math.exp(logits[pos][v]) for v in range(len(logits[pos])) if v != MASK)
            total += math.log((a_s - a_t) / (1 - a_t)) + logits[pos][ni] - math.log(z)
    return total


@pytest.mark.parametrize("step_index", [1, 4])  # 4: the last of 5 steps (alpha_s = 1)
def test_log_prob_matches_hand_computation_and_normalises(step_index):
    s = MaskedScheduler(10)
    s.set_timesteps(5)
    t = s.timesteps[step_index]
    a_t, a_s = s.alpha(t), s.alpha(s.prev_timestep(t))
    logits = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x = torch.tensor([[MASK, MASK, 2]])
    lp = s.log_prob(logits, t, x, torch.tensor([[3, MASK, 2]]))
    want = hand_log_prob(logits[0].tolist(), a_t, a_s, [MASK, MASK, 2], [3, MASK, 2])
    assert lp.dtype == torch.float64
    assert (lp.item() == want == -math.inf) or abs(lp.item() - want) < 1e-12
    every = torch.tensor(list(itertools.product(range(4), repeat=3)))  # all 64 next states
    lps = s.log_prob(logits.expand(64, 3, 4), t, x.expand(64, 3), every)
    assert abs(lps.exp().sum().item() - 1) < 1e-12
    for nxt, got in zip(every.tolist(), lps.tolist(), strict=True):
        want = hand_log_prob(logits[0].tolist(), a_t, a_s, [MASK, MASK, 2], nxt)
        assert got == want or abs(got - want) < 1e-12


def test_log_prob_is_differentiable():
    s = MaskedScheduler(10)
    s.set_timesteps(5)
    logits = torch.randn(2, 3, 4, requires_grad=True)
    x = torch.tensor([[MASK, MASK, 2], [MASK, 3, MASK]])
    nxt = torch.tensor([[3, MASK, 2], [0, 3, MASK]])
    s.log_prob(logits, s.timesteps[1], x, nxt).sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[0, 0].abs().sum() > 0
    assert logits.grad[0, 1:].abs().sum() == 0  # still masked / unmasked: no token term


# --------------------------------------------------------------------------- the sampler


def table_denoiser(V: int, seed: int):
    table = torch.randn(7, V, generator=torch.Generator().manual_seed(seed))
    return lambda x, t: table[: x.shape[1]].expand(x.shape[0], -1, -1)


def test_sample_masked_states_log_probs_and_keep():
    s, den = MaskedScheduler(100), table_denoiser(5, 0)
    x = torch.full((6, 7), MASK)
    traj = sample_masked(den, s, x, num_steps=8, generator=torch.Generator().manual_seed(0))
    assert traj.states[0].eq(MASK).all() and not traj.sample.eq(MASK).any()
    assert traj.log_probs.shape == (6, 8) and traj.log_probs.dtype == torch.float64
    assert traj.stochastic_steps == list(range(8)) and traj.nfe == 8
    assert traj.timesteps[0] == 99 and len(traj.states) == 9
    for i in range(8):  # unmasked tokens never change; log_probs are the step's density
        prev, nxt = traj.states[i], traj.states[i + 1]
        assert (nxt[prev != MASK] == prev[prev != MASK]).all()
        lp = s.log_prob(den(prev, traj.timesteps[i]), traj.timesteps[i], prev, nxt)
        assert torch.equal(lp, traj.log_probs[:, i])
    kept = sample_masked(
        den, s, x, num_steps=8, generator=torch.Generator().manual_seed(0), keep={0, 3, 8}
    )
    assert sorted(kept.states) == [0, 3, 8] and torch.equal(kept.states[3], traj.states[3])
    assert torch.equal(kept.sample, traj.sample)


def test_stitched_sampling_equals_one_run():
    s, den = MaskedScheduler(100), table_denoiser(5, 0)
    x = torch.full((6, 7), MASK)
    whole = sample_masked(den, s, x, num_steps=8, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    a = sample_masked(den, s, x, num_steps=8, generator=g, stop_step=3)
    b = sample_masked(table_denoiser(5, 0), s, a.sample, num_steps=8, generator=g, start_step=3)
    assert torch.equal(b.sample, whole.sample) and b.nfe == 5 and b.stochastic_steps[0] == 3
    assert torch.equal(torch.cat([a.log_probs, b.log_probs], 1), whole.log_probs)
    assert torch.equal(torch.cat([a.timesteps, b.timesteps]), whole.timesteps)
    g = torch.Generator().manual_seed(3)  # another denoiser after the stitch: same first part
    a2 = sample_masked(den, s, x, num_steps=8, generator=g, stop_step=3)
    other = sample_masked(
        table_denoiser(5, 9), s, a2.sample, num_steps=8, generator=g, start_step=3
    )
    assert torch.equal(a2.states[3], whole.states[3]) and not other.sample.eq(MASK).any()


# ----------------------------------------------------------------------------- the losses


class Spy:
    """An adapter stand-in whose logits are a leaf tensor; it records what denoise got."""

    def __init__(self, T: int, shape: tuple[int, int, int]):
        self.scheduler_obj = MaskedScheduler(T)
        self.logits = torch.randn(shape, requires_grad=True)

    def denoise(self, x, t, cond=None):
        self.x, self.t = x, t
        return self.logits


def test_training_loss_targets_masked_positions_only():
    spy, g = Spy(50, (64, 6, 5)), torch.Generator().manual_seed(0)
    x0 = torch.randint(2, 5, (64, 6), generator=g)
    x0[:, 4:] = PAD
    loss = masked.training_loss(spy, x0, None, g, t_min=10)
    loss.backward()
    m = spy.x == MASK
    assert (spy.t >= 10).all() and m.any() and (~m).any()
    assert (spy.logits.grad[~m] == 0).all() and (spy.logits.grad[m] != 0).any()
    ce = torch.nn.functional.cross_entropy(
        spy.logits.detach().transpose(1, 2), x0, reduction="none"
    )
    want = ((ce * m).sum(1) / m.sum(1).clamp(min=1)).mean()
    assert torch.allclose(loss, want)
    assert (spy.x[~m] == x0[~m]).all()


def test_sample_without_masked_positions_contributes_zero():
    logits = torch.randn(2, 3, 4)
    target = torch.tensor([[2, 3, 0], [2, 2, 2]])
    where = torch.tensor([[True, False, True], [False, False, False]])
    one = masked._masked_ce(logits[:1], target[:1], where[:1])
    assert torch.allclose(masked._masked_ce(logits, target, where), one / 2)


def test_intermediate_loss_targets_and_timesteps():
    T, t_i = 100, 40
    spy, g = Spy(T, (2000, 6, 5)), torch.Generator().manual_seed(0)
    x_i = torch.randint(2, 5, (2000, 6), generator=g)
    x_i[:, :2] = MASK  # masked at t_I
    masked.intermediate_loss(spy, x_i, None, t_i, g).backward()
    assert (spy.t > t_i).all() and spy.t.max() <= T - 1
    target = (spy.x == MASK) & (x_i != MASK)
    kept = ~target & (x_i != MASK)
    assert (spy.x[:, :2] == MASK).all() and (spy.x[kept] == x_i[kept]).all()
    grad_pos = spy.logits.grad.abs().sum(-1) > 0
    assert torch.equal(grad_pos, target)
    # each unmasked token of x_i is masked w.p. 1 - alpha_t / alpha_{t_I}
    a = spy.scheduler_obj.alphas_cumprod
    p = (1 - a[spy.t] / a[t_i]).mean().item()
    assert abs(target[:, 2:].double().mean().item() - p) < binomial_tol(p, 8000)
    with pytest.raises(ValueError, match="t_i: 99"):
        masked.intermediate_loss(spy, x_i, None, T - 1, g)


# ---------------------------------------------------------------------------- the adapter


def tiny(vocab: Vocabulary, **over) -> MoleculeAdapter:
    cfg = dict(
        length=12,
        width=32,
        layers=1,
        heads=2,
        num_train_timesteps=100,
        representation=vocab.representation,
    )
    return MoleculeAdapter(MoleculeModelConfig(**{**cfg, **over}), vocab)


def test_adapter_subs_output_and_interface():
    torch.manual_seed(0)
    vocab = Vocabulary.from_smiles(SMILES)
    m = tiny(vocab)
    torch.nn.init.normal_(m.network.out[1].weight)
    assert m.cfg.vocab_size == len(vocab) and m.sample_shape == (12,)
    assert len(m.alphas_cumprod) == 100 and m.prediction_type == "logits"
    x = m.initial_state(3, torch.Generator(), "cpu")
    assert x.shape == (3, 12) and x.eq(MASK).all()
    x[:, 0] = vocab.index["C"]
    out = m.denoise(x, torch.tensor([5, 50, 99]))
    assert out.shape == (3, 12, len(vocab))
    assert out[:, 1:, MASK].eq(-math.inf).all() and torch.isfinite(out[:, 1:, 2:]).all()
    assert (out[:, 0].softmax(-1)[:, vocab.index["C"]] == 1).all()  # carry-over
    for kind in ("masked", "ddim", "ddpm"):
        assert isinstance(m.scheduler(kind), MaskedScheduler)
    with pytest.raises(ValueError, match="'flow_euler' is not allowed"):
        m.scheduler("flow_euler")
    assert m.encode_condition(["qm9"]) is None and flops_per_call(m, "qm9") > 0
    assert m.decode(vocab.encode(["CCO"], 12)) == ["CCO"]


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="molecule.model.heads"):
        MoleculeModelConfig(width=30, heads=4)
    with pytest.raises(ConfigError, match="molecule.model.schedule"):
        MoleculeModelConfig(schedule="sqrt")
    with pytest.raises(ConfigError, match="molecule.model.vocab_size"):
        MoleculeAdapter(
            MoleculeModelConfig(
                vocab_size=5, length=4, width=8, layers=1, heads=2, representation="smiles"
            ),
            Vocabulary.from_smiles(SMILES),
        )
    with pytest.raises(
        ConfigError,
        match="molecule.model.representation: 'selfies', but the vocabulary is of 'smiles' tokens",
    ):
        MoleculeAdapter(
            MoleculeModelConfig(length=4, width=8, layers=1, heads=2),
            Vocabulary.from_smiles(SMILES),
        )


def test_selfies_vocabulary_spells_molecules_that_always_decode():
    """SELFIES: encode -> decode returns the molecule; any PAD-terminated row of symbols
    decodes to a molecule rdkit parses (or to "" if it has no atom symbol, which validity
    counts as invalid); an empty row or a MASK left is invalid."""
    from graftbench.tasks.molecule.data import canonical, parse

    neutral = ["CC(=O)Oc1ccccc1C(=O)O", "C%10CCCCC%10", "CC.C#N", "OC1CC1C#N", "c1ccncc1"]
    vocab = Vocabulary.from_smiles(neutral, "selfies")
    assert vocab.representation == "selfies" and "[C]" in vocab.index and "[Ring1]" in vocab.index
    assert Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict()))) == vocab
    assert vocab != Vocabulary(vocab.tokens[2:], "smiles")
    ids = vocab.encode(neutral, 40)
    assert [canonical(s) for s in vocab.decode(ids)] == [canonical(s) for s in neutral]
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(2, len(vocab), (200, 12), generator=g)
    ends = torch.randint(1, 13, (200,), generator=g)
    rows[torch.arange(12) >= ends[:, None]] = PAD
    decoded = vocab.decode(rows)
    # every row decodes to a molecule, or to nothing when its symbols hold no atom at all
    assert all(parse(s) is not None for s in decoded if s) and sum(map(bool, decoded)) > 150
    broken = rows[:2].clone()
    broken[0, 0], broken[1, 0] = PAD, MASK
    assert all(parse(s) is None for s in vocab.decode(broken))
    with pytest.raises(ValueError, match="representation: 'inchi'"):
        Vocabulary(["[C]"], "inchi")


def test_tiny_model_learns_two_molecules():
    torch.manual_seed(0)
    data = ["CCO", "c1ccccc1O"]
    vocab = Vocabulary.from_smiles(data)
    m = tiny(vocab)
    x0 = vocab.encode(data, 12).repeat(16, 1)  # (32, 12)
    opt = torch.optim.Adam(m.network.parameters(), lr=3e-3)
    g, losses = torch.Generator().manual_seed(0), []
    for _ in range(250):
        loss = m.training_loss(x0, None, g)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert sum(losses[-20:]) < 0.2 * sum(losses[:20])
    m.network.eval()
    with torch.no_grad():
        traj = m.sample_trajectory(
            lambda x, t: m.denoise(x, t),
            m.scheduler("ddim"),
            m.initial_state(64),
            num_steps=50,
            generator=torch.Generator().manual_seed(1),
        )
    smiles = m.decode(traj.sample)
    assert sum(s in data for s in smiles) >= 0.7 * len(smiles), smiles  # 60 of 64 at these seeds
    assert {s for s in smiles if s in data} == set(data)


def test_adapter_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    vocab = Vocabulary.from_smiles(SMILES)
    m = tiny(vocab, schedule="cosine")
    torch.nn.init.normal_(m.network.out[1].weight)  # zero-initialised: make the output vary
    m.save(tmp_path / "m.pt", {"seed": 3})
    back = MoleculeAdapter.load(tmp_path / "m.pt")
    assert back.vocab == vocab and back.cfg == m.cfg
    assert torch.equal(back.scheduler_obj.alphas_cumprod, m.scheduler_obj.alphas_cumprod)
    m.network.eval()
    x = vocab.encode(SMILES[1:3], 12)
    x[:, ::2] = MASK
    t = torch.tensor([3, 70])
    assert torch.equal(back.denoise(x, t), m.denoise(x, t))
