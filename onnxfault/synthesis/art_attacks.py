"""``art:NAME``: an evasion attack of the Adversarial Robustness Toolbox (ART, Nicolae et al. 2018) run on the
model's differentiated torch module, wrapped as ART's ``PyTorchClassifier`` (the class scores as logits;
log-probabilities when the model ends in a softmax), with onnxfault's seeds, metrics, report and Ray chunks.
``NAME`` is the attack's class in ``art.attacks.evasion`` (``DeepFool``, ``AutoAttack``, ``SquareAttack``,
``CarliniL2Method``, ``SaliencyMapMethod``, …); its parameters come from ``art_param`` (``--art-param
key=value,key=value``; numbers, true/false and none are read as such). With ``target`` T, the attack must take
``targeted``; it then gets targeted=True and T as every seed's label. numpy's and torch's generators are seeded
from ``seed`` and the chunk's first seed before each chunk, so runs repeat and Ray gives the same inputs. ART is
the ``art`` extra.
"""
from __future__ import annotations

import ast
import contextlib
import io
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..errors import OnnxFaultError
from .contract import Method, option

LISTED = ("AutoAttack", "DeepFool", "SquareAttack")  # shown in the method list; any other evasion attack runs too
_INSTALL = "install it with `pip install 'onnxfault[art]'`"


def parse_params(text: str, method: str) -> dict:
    """``key=value,key=value`` as a dict, each value a Python literal when it reads as one (else a string)."""
    params = {}
    for part in (piece.strip() for piece in text.split(",") if piece.strip()):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise OnnxFaultError(f"{method}: `art_param` {part!r} is not key=value; e.g. `art_param` "
                                 "eps=0.1,max_iter=10", parameter="art_param")
        words = {"true": True, "false": False, "none": None}
        value = value.strip()
        if value.lower() in words:
            params[key] = words[value.lower()]
            continue
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


def attack_class(name: str):
    """The ART evasion attack class called ``name``; one error naming the install or the known attacks."""
    try:
        import art.attacks.evasion as evasion
        from art.attacks.attack import EvasionAttack
    except ImportError:
        raise OnnxFaultError(f"art:{name} runs an attack of the Adversarial Robustness Toolbox; {_INSTALL}",
                             parameter="method") from None
    found = getattr(evasion, name, None)
    if not (isinstance(found, type) and issubclass(found, EvasionAttack)):
        known = sorted(n for n, v in vars(evasion).items() if isinstance(v, type) and issubclass(v, EvasionAttack))
        from ..errors import close_matches_hint

        raise OnnxFaultError(close_matches_hint(name, known, "ART evasion attack"), parameter="method")
    return found


def _parameters(cls) -> list[str]:
    import inspect

    return [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "estimator", "classifier")]


class ArtAttack(Method):
    """The base of every ``art:NAME`` method (one subclass per attack, made by :func:`family_member`)."""

    name = "art"
    attack = ""
    summary = "an evasion attack of the Adversarial Robustness Toolbox"
    paper = "Nicolae et al.: Adversarial Robustness Toolbox v1.0.0 (2018)"
    uses_neurons = False

    @dataclass(frozen=True)
    class Options:
        art_param: str = option("", "the ART attack's parameters, key=value,key=value (e.g. eps=0.1,max_iter=10)")

    def check(self) -> None:
        """Fail now on an attack ART does not have (or without ART)."""
        attack_class(self.attack)

    def run(self, p):
        import torch

        cls = attack_class(self.attack)
        params = parse_params(p.options.art_param, self.name)
        taken = _parameters(cls)
        unknown = [k for k in params if k not in taken]
        if unknown:
            raise OnnxFaultError(f"{self.name} has no parameter '{unknown[0]}'; it takes {', '.join(taken)}",
                                 parameter="art_param")
        if "verbose" in taken:
            params.setdefault("verbose", False)  # ART's progress bars would print over onnxfault's
        labels = p.y
        if p.target is not None:
            if "targeted" not in taken:
                raise OnnxFaultError(f"{self.name} cannot be targeted; leave `target` out", parameter="target")
            params["targeted"], labels = True, np.full(len(p.y), p.target)
        full = p.once("full", lambda: p.differentiable(p.model.scores_only()))
        classifier = p.once("art-classifier", lambda: art_classifier(full, tuple(p.x.shape[1:]), p.model.num_classes,
                                                                     p.clip, p.scores_are_probabilities))
        try:
            attack = cls(classifier, **params)
        except (TypeError, ValueError) as err:
            raise OnnxFaultError(f"{self.name}: ART refuses the parameters {params} ({err})",
                                 parameter="art_param") from None
        onehot = np.eye(classifier.nb_classes, dtype=np.float32)[labels]
        p.module = full
        saved = np.random.get_state()  # ART draws from numpy's and torch's global generators: seed them, then
        try:                           # give the caller's back
            with torch.random.fork_rng(devices=[]), _no_progress_bars():
                np.random.seed((p.seed * 1_000_003 + p.first) % 2**32)
                torch.manual_seed(p.seed * 1_000_003 + p.first)
                made = attack.generate(x=p.x.astype(np.float32), y=onehot)
        except (ValueError, TypeError, NotImplementedError) as err:  # ART's refusals of the model or data
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise OnnxFaultError(f"{self.name}: ART cannot run it on this model ({first})", parameter="method") from None
        finally:
            np.random.set_state(saved)
        return np.clip(made, *p.clip).astype(np.float32)


@contextmanager
def _no_progress_bars():
    """ART's attacks (and the ones AutoAttack builds inside, which ignore ``verbose``) draw tqdm bars on
    sys.stderr: swallow what they write there while the attack runs."""
    with contextlib.redirect_stderr(io.StringIO()):
        yield


def art_classifier(full, input_shape: tuple[int, ...], classes: int, clip, probabilities: bool):
    """``full`` (a :class:`~onnxfault.adapters.gradients.Differentiable` of the class scores) as ART's
    ``PyTorchClassifier``: logits (log-probabilities for a softmax output), ``clip`` as its ``clip_values``."""
    import torch
    from art.estimators.classification import PyTorchClassifier

    class Logits(torch.nn.Module):
        """The model's class scores (log-probabilities for a softmax output), as ART wants logits."""

        def __init__(self, module, probabilities: bool):
            super().__init__()
            self.module, self.probabilities = module, probabilities

        def forward(self, x):
            scores = self.module(x.float())[0]  # float32, as the model takes (HopSkipJump predicts in float64)
            return torch.log(scores.clamp_min(1e-12)) if self.probabilities else scores

    module = Logits(full.module, probabilities)
    return PyTorchClassifier(module, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(input_shape),
                             nb_classes=classes, clip_values=tuple(float(c) for c in clip),
                             device_type="gpu" if full.device.type == "cuda" else "cpu")


def family_member(name: str) -> Method:
    """The method ``art:NAME`` (its class made here; the attack is checked when the method is asked for)."""
    attack = name.split(":", 1)[1]
    member = type(f"Art{attack}", (ArtAttack,), {"name": name, "attack": attack,
                                                   "summary": f"ART's {attack} evasion attack (--art-param key=value,…)"})
    return member()
