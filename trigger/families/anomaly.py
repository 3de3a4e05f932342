"""Anomaly-detection triggers on the `l1` dataset: the firmware outputs one anomaly score per event.

Two families share the inputs, the score path and the rate calibration:

- `autoencoder` (Govorkova et al. 2022): a dense autoencoder trained on background; the firmware computes
  score = sum_i (x_i - x^_i)^2 over the 57 inputs, x being the on-grid input and x^ the reconstruction.
- `vae` (CMS AXOL1TL): a variational autoencoder trained with reconstruction + KL loss; the firmware
  carries only the encoder up to mu and computes score = ||mu||^2.

The score path uses layers hls4ml converts natively and QKeras models exactly: Subtract, a QActivation
(quantized_bits) that rounds the difference onto a declared grid, Dot (x . x, i.e. the sum of squares)
and a final QActivation(quantized_relu) giving the score's unsigned type `ap_ufixed<B,I,AP_RND_CONV,AP_SAT>`.
Every intermediate type is chosen so that no value can be rounded except by those two declared
quantizers, both in the HLS (types set in `configure_hls`) and in Keras's float32 arithmetic (checked when
the config is read), which is what makes the C simulation bit-exact. Saturation of the score is counted,
never silent, and it cannot lose an event as long as the thresholds lie below the top code.

Preprocessing (`model.preprocessing.pt_shift`): each object type's pT is multiplied by 2^-shift. On chip
this is not an operation: the L1 pT word (an unsigned integer count of its LSB) is fed to the IP with its
binary point moved, i.e. the input port's `ap_fixed` reinterprets the same bits; the rescaling is done in
`prepare` for training and the pipeline puts the result on the input grid, so both see the same values.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from trigger.config import FixedType, Section
from trigger.errors import ConfigError
from trigger.families.base import ModelFamily, Prepared, Split
from trigger.rate import ScoreType, calibrate, clopper_pearson, efficiency_vs_rate, threshold_at_rate

if TYPE_CHECKING:
    from tensorflow import keras

    from trigger.config import Config
    from trigger.data import Dataset

# The l1 dataset's object slots, in the order of `objects[:, slot]`: (group, first slot, end slot).
OBJECT_GROUPS = (("met", 0, 1), ("electron", 1, 5), ("muon", 5, 9), ("jet", 9, 19))
N_SLOTS = 19
N_INPUTS = N_SLOTS * 3
FLOAT32_MANTISSA = 24  # a float32 sum is exact while every partial sum fits in this many significant bits
KINDS = ("float", "quantized", "csim")
MIN_PASSING = 100  # signal events passing: the binomial relative error of an efficiency is then <= 10 %


def _widths(sec: Section, key: str, default: list[int]) -> list[int]:
    value = sec.get(key, default)
    if (not isinstance(value, list)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        raise ConfigError(sec.field_path(key), f"must be a list of positive integers, got {value!r}")
    return value


def _fixed(sec: Section, key: str, default: FixedType) -> FixedType:
    if not sec.has(key):
        sec.get(key)
        return default
    return FixedType.read(sec.section(key), default)


def _frac(t: FixedType, signed: bool = True) -> int:
    """Fractional bits of a QKeras-convention type (sign bit not counted in `integer`)."""
    return t.bits - t.integer - (1 if signed else 0)


def sum_of_squares_type(operand: FixedType, n: int) -> tuple[int, int]:
    """(width, integer bits) of an `ap_ufixed` holding any sum of `n` squares of signed `operand` exactly.

    The largest square is that of the most negative code, -2^(bits-1), so the sum's integer code (in units
    of the square's LSB) is at most n * 4^(bits-1).
    """
    width = (n * 4 ** (operand.bits - 1)).bit_length()
    return width, width - 2 * _frac(operand)


def difference_type(a: FixedType, b: FixedType) -> tuple[int, int]:
    """(width, integer bits incl. sign) of an `ap_fixed` holding a - b exactly for signed a and b."""
    frac = max(_frac(a), _frac(b))
    integer = max(a.integer, b.integer) + 2
    return integer + frac, integer


def pt_shift_features(objects: np.ndarray, shifts: dict[str, int]) -> np.ndarray:
    """(N, 19, 3) objects -> (N, 57) inputs, object-major, with each group's pT scaled by 2^-shift."""
    if objects.ndim != 3 or objects.shape[1:] != (N_SLOTS, 3):
        raise ValueError(f"l1 objects must have shape (N, {N_SLOTS}, 3), got {objects.shape}")
    x = np.array(objects, dtype=np.float64)
    for group, first, end in OBJECT_GROUPS:
        x[:, first:end, 0] *= 2.0 ** -shifts[group]
    return x.reshape(len(x), N_INPUTS).astype(np.float32)


class AnomalyDetector(ModelFamily):
    """What the two anomaly families share: inputs, config, score path, calibration, plots."""

    datasets = ("zerobias", "l1")
    chip_layers: ClassVar[str]  # a phrase for errors naming which QDense layers go on chip
    default_latent: ClassVar[int]

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        arch = Section(cfg.model.architecture, "model.architecture")
        self.encoder = _widths(arch, "encoder", [32, 16])
        self.latent = arch.integer("latent", self.default_latent, minimum=1, maximum=64)
        self.decoder = _widths(arch, "decoder", self.encoder[::-1])
        score = _fixed(arch, "score_type", FixedType(16, 10))
        self.score_type = ScoreType(score.bits, score.integer)
        self._read_architecture(arch)
        arch.finish()

        prep = Section(cfg.model.preprocessing, "model.preprocessing")
        shifts = prep.section("pt_shift")
        self.pt_shift = {g: shifts.integer(g, 5, minimum=0, maximum=16) for g, _, _ in OBJECT_GROUPS}
        shifts.finish()
        prep.finish()

        ev = Section(cfg.evaluation, "evaluation")
        self.collision_mhz = ev.number("collision_rate_mhz", 40.0, minimum=0.0, exclusive_minimum=True)
        rates = ev.get("rates_khz", [1.0, 10.0])
        if (not isinstance(rates, list) or not rates
                or not all(isinstance(r, (int, float)) and not isinstance(r, bool)
                           and 0 < r < self.collision_mhz * 1e3 for r in rates)):
            raise ConfigError("evaluation.rates_khz", "must be a list of rates in kHz between 0 and the "
                                                      f"collision rate, got {rates!r}")
        self.rates_khz = [float(r) for r in rates]
        calibration = ev.section("calibration")
        file = calibration.string("file", None)
        self.calibration_file = None if file is None else Path(file)
        self.verify_seed = calibration.integer("verify_seed", 1, minimum=0)
        calibration.finish()
        ev.finish()

        for name in cfg.quantization.layers:
            if name not in self.quantized_dense():
                raise ConfigError(f"quantization.layers.{name}",
                                  f"not a {self.chip_layers} layer ({', '.join(self.quantized_dense())}); "
                                  "score-path types are set in model.architecture")
        self._check_exact_score()
        self.class_names: list[str] = ["background"]
        self.background_source: dict[str, Any] = {}

    @abstractmethod
    def _read_architecture(self, arch: Section) -> None:
        """Family-specific keys of `model.architecture`."""

    @abstractmethod
    def quantized_dense(self) -> list[str]:
        """Names of the QDense layers whose quantizers `quantization.layers` may set."""

    @abstractmethod
    def _squared_operand(self) -> tuple[FixedType, int, str]:
        """(type of the vector whose squares are summed, its length, the config field that sets it)."""

    def _check_exact_score(self) -> None:
        """Keras sums squares in float32: the exact sum must fit its mantissa, or QKeras would round."""
        operand, n, field = self._squared_operand()
        width, _ = sum_of_squares_type(operand, n)
        if width > FLOAT32_MANTISSA:
            spelled = f"ap_fixed<{operand.bits},{operand.integer + 1}>"
            raise ConfigError(field, f"a sum of {n} squares of {spelled} "
                                     f"needs {width} bits, more than float32's {FLOAT32_MANTISSA}: the Keras "
                                     "model could not be bit-exact; use fewer bits")

    # ---- data -------------------------------------------------------------------------------------------

    def prepare(self, data: Dataset) -> Prepared:
        """Train on the train split's background, stop early on the val split's background, and test on the
        test split's background plus the signal events of every split.

        Signal events are never trained on, so all of them are held out. The pipeline checks bit-exactness
        on val + test (distinct events). Rates are calibrated on `calibration_events` when the config names
        a calibration file that exists, else on the test background, which then needs the largest share of
        the file (see `data.fractions` in configs/ad_*.yaml).
        """
        if data.name not in self.datasets:
            raise ConfigError("data.file", f"holds the {data.name!r} dataset, anomaly detection needs 'zerobias' "
                                           "or 'l1'")
        self.class_names = list(data.class_names)
        self._data = data
        self._calibration_manifest()

        def split(parts: list[tuple[dict[str, np.ndarray], np.ndarray]]) -> Split:
            return self._split([{k: v[keep] for k, v in a.items()} for a, keep in parts], role=0)

        train, val, test = data.train, data.val, data.test
        test_split = split([(test, test["label"] == 0)] + [(a, a["label"] != 0) for a in (train, val, test)])
        self.background_source = {"file": str(data.path), "dataset": data.name,
                                  "crossings": int(np.count_nonzero(test_split.meta["label"] == 0)),
                                  "what": "the test split's "
                                          + ("zero-bias crossings" if data.name == "zerobias" else "background")}
        return Prepared(
            split([(train, train["label"] == 0)]),
            split([(val, val["label"] == 0)]),
            test_split,
            input_names=list(data.feature_names), output_names=["anomaly_score"],
            preprocessing={
                "kind": "pt_shift",
                "pt_scale": {g: f"2^-{s}" for g, s in self.pt_shift.items()},
                "where": "at the IP's input port: the L1 pT words enter with their binary point moved by the "
                         "shift (a reinterpretation of the same bits, no logic); eta and phi enter unscaled",
                "train": "background of the train split (validation: background of the val split)",
                "test": "background of the test split and signal events of all splits",
            },
        )

    def _split(self, parts: list[dict[str, np.ndarray]], role: int) -> Split:
        """Model inputs of dataset rows; meta: label, process, the pileup `library` (-1 without one) and the
        `role` (0: the data file's test events, 1: calibration crossings)."""
        x = np.concatenate([pt_shift_features(a["objects"], self.pt_shift) for a in parts])
        meta = {key: np.concatenate([a[key] for a in parts]).astype(np.int64) for key in ("label", "process")}
        meta["library"] = np.concatenate([a.get("library", np.full(len(a["label"]), -1)) for a in parts]
                                         ).astype(np.int64)
        meta["role"] = np.full(len(x), role, dtype=np.int64)
        return Split(x, x, meta)

    def _calibration_manifest(self) -> dict[str, Any] | None:
        """The manifest of `evaluation.calibration.file` when the config names one and it exists (the
        >= 2M-crossing file is not shipped: without it the test background calibrates, and the report says
        so), checked to be zero-bias crossings at the data file's pileup: read with one row, at `prepare`,
        so that a wrong file stops the compile before any training."""
        path = self.calibration_file
        if path is None or not path.is_file():
            return None
        from trigger.data import read

        manifest, _ = read(path, max_events=1)
        field = "evaluation.calibration.file"
        if manifest["dataset"] != "zerobias":
            raise ConfigError(field, f"{path}: holds the {manifest['dataset']!r} dataset, not zero-bias crossings")
        mu = manifest.get("settings", {}).get("pileup", {}).get("mu")
        data_mu = self._data.manifest.get("settings", {}).get("pileup", {}).get("mu")
        if self._data.name == "zerobias" and mu != data_mu:
            raise ConfigError(field, f"{path}: pileup mu = {mu}, the data file {self._data.path} has mu = {data_mu}")
        return manifest

    def calibration_events(self) -> Split | None:
        """The zero-bias crossings of `evaluation.calibration.file`, which the rates are calibrated on (None
        without the file)."""
        manifest = self._calibration_manifest()
        if manifest is None:
            if self.calibration_file is not None:
                self.background_source["missing"] = str(self.calibration_file)
            return None
        from trigger.data import read

        _, arrays = read(self.calibration_file)
        background = arrays["label"] == 0
        self.background_source = {"file": str(self.calibration_file), "dataset": "zerobias",
                                  "pileup_mu": manifest["settings"]["pileup"]["mu"],
                                  "crossings": int(np.count_nonzero(background)),
                                  "what": "every zero-bias crossing"}
        return self._split([{k: v[background] for k, v in arrays.items()}], role=1)

    def events(self, arrays: dict[str, np.ndarray]) -> Split:
        x = pt_shift_features(arrays["objects"], self.pt_shift)
        meta = {key: arrays[key].astype(np.int64) for key in ("label", "process") if key in arrays}
        return Split(x, x, meta)

    # ---- models -----------------------------------------------------------------------------------------

    def _dense(self, name: str, units: int, x: Any, quantized: bool) -> Any:
        from qkeras import QDense, quantized_bits
        from tensorflow import keras

        if not quantized:
            return keras.layers.Dense(units, name=name)(x)
        q = self.cfg.quantization.for_layer(name)
        return QDense(units, name=name,
                      kernel_quantizer=quantized_bits(q.weight.bits, q.weight.integer, alpha=1),
                      bias_quantizer=quantized_bits(q.bias.bits, q.bias.integer, alpha=1))(x)

    def _relu(self, name: str, x: Any, quantized: bool) -> Any:
        from qkeras import QActivation, quantized_relu
        from tensorflow import keras

        if not quantized:
            return keras.layers.Activation("relu", name=f"{name}_relu")(x)
        a = self.cfg.quantization.for_layer(name).activation
        return QActivation(quantized_relu(a.bits, a.integer), name=f"{name}_relu")(x)

    @staticmethod
    def _round(name: str, x: Any, t: FixedType) -> Any:
        """Round onto the signed grid `t` (ap_fixed<bits, integer+1, AP_RND_CONV, AP_SAT> in the HLS)."""
        from qkeras import QActivation, quantized_bits

        return QActivation(quantized_bits(t.bits, t.integer, alpha=1), name=name)(x)

    def _rounded_dense(self, name: str, units: int, x: Any, quantized: bool) -> Any:
        """A linear QDense whose output is rounded onto its declared grid by `<name>_q`."""
        x = self._dense(name, units, x, quantized)
        return self._round(f"{name}_q", x, self.rounded_outputs()[name]) if quantized else x

    @abstractmethod
    def rounded_outputs(self) -> dict[str, FixedType]:
        """Linear QDense layers of the firmware -> the signed grid their `<name>_q` QActivation rounds to."""

    def _score(self, vector: Any, quantized: bool) -> Any:
        """sum(vector^2) as a Dot, then (quantized) the score's unsigned saturating type."""
        from qkeras import QActivation, quantized_relu
        from tensorflow import keras

        squares = keras.layers.Dot(axes=1, name="sum_squares")([vector, vector])
        if not quantized:
            return squares
        score = quantized_relu(self.score_type.bits, self.score_type.integer)
        return QActivation(score, name="score")(squares)

    def compile_args(self) -> dict[str, Any]:
        return {"loss": "mse"}

    @staticmethod
    def is_quantized(model: keras.Model) -> bool:
        return any(type(layer).__name__.startswith("Q") for layer in model.layers)

    def configure_hls(self, hls_config: dict[str, Any], firmware_model: keras.Model) -> None:
        """Exact types for the sum of squares: nothing between the declared quantizers may round or wrap."""
        operand, n, _ = self._squared_operand()
        width, integer = sum_of_squares_type(operand, n)
        layers = hls_config["LayerName"]
        entry = layers.setdefault("sum_squares", {}).setdefault("Precision", {})
        entry["result"] = entry["accum"] = f"ap_ufixed<{width},{integer}>"
        # The rounding `<name>_q` QActivations after linear QDense layers are kept by the pipeline's
        # `convert._keep_linear_quantizers` (hls4ml 1.3.0 would fold them away).

    # ---- physics figures --------------------------------------------------------------------------------

    def _background(self, split: Split) -> np.ndarray:
        """The crossings the thresholds are set on: the calibration file's when present, else the test
        split's background."""
        role, labels = split.meta["role"], split.meta["label"]
        return role == 1 if np.any(role == 1) else (labels == 0) & (role == 0)

    def evaluate(self, outputs: np.ndarray | list[np.ndarray], split: Split) -> dict[str, Any]:
        """Calibrate this model's own scores: thresholds on its background (verified two-fold, the halves
        split by pileup library), efficiencies with their intervals, AUCs, saturation."""
        scores = np.asarray(outputs[0] if isinstance(outputs, list) else outputs).reshape(-1)
        background = self._background(split)
        # the test split's background steps aside (label -1) when a calibration file sets the thresholds
        labels = np.where(background | (split.meta["label"] > 0), split.meta["label"], -1)
        library = split.meta["library"]
        groups = library if np.all(library[background] >= 0) else None
        result = calibrate(scores, labels, class_names=self.class_names, rates_khz=self.rates_khz,
                           collision_mhz=self.collision_mhz, score_type=self.score_type,
                           verify_seed=self.verify_seed, groups=groups)
        result["collision_rate_mhz"] = self.collision_mhz
        result["background_source"] = dict(self.background_source)
        if "missing" in self.background_source:
            result["warnings"].append(
                f"evaluation.calibration.file {self.background_source['missing']} not found: thresholds from "
                f"the {self.background_source['crossings']} test-split crossings of {self.background_source['file']} "
                "(docs/anomaly.md gives the command that generates the calibration file)")
        return result

    def plots(self, outputs: dict[str, np.ndarray | list[np.ndarray]], split: Split,
              out_dir: Path) -> list[str]:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt

        labels = split.meta["label"]
        background = self._background(split)
        signals = [i for i in range(1, len(self.class_names)) if np.any(labels == i)]
        scores = {k: np.asarray(v[0] if isinstance(v, list) else v, dtype=np.float64).reshape(-1)
                  for k, v in outputs.items()}
        kinds = [k for k in KINDS if k in scores]
        words = {"float": "float model", "quantized": "QKeras model", "csim": "firmware (C simulation)"}

        fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4.5), squeeze=False)
        for ax, kind in zip(axes[0], kinds, strict=True):
            s = scores[kind]
            bins = np.linspace(0.0, np.quantile(s, 0.9999) * 1.05 + 1e-9, 80)
            for i, rows in [(0, background), *((i, labels == i) for i in signals)]:
                ax.hist(np.minimum(s[rows], bins[-1]), bins=bins, histtype="step", density=True,
                        color="black" if i == 0 else f"C{i - 1}", label=self.class_names[i])
            for r in self.rates_khz:
                ax.axvline(threshold_at_rate(s[background], r, self.collision_mhz).value, color="grey", ls=":",
                           lw=1)
            ax.set_yscale("log")
            ax.set_xlabel("anomaly score (last bin: overflow)")
            ax.set_ylabel("density")
            ax.set_title(f"{words[kind]}: thresholds at {', '.join(f'{r:g}' for r in self.rates_khz)} kHz dotted",
                         fontsize=9)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "score_distributions.png", dpi=110)
        plt.close(fig)

        # one panel per model: each signal's efficiency against the rate, with its 68 % Clopper-Pearson band
        fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 4.8), squeeze=False, sharey=True)
        for ax, kind in zip(axes[0], kinds, strict=True):
            s = scores[kind]
            for i in signals:
                n = int(np.count_nonzero(labels == i))
                rate, eff = efficiency_vs_rate(s[background], s[labels == i], self.collision_mhz)
                low, high = clopper_pearson(np.rint(eff * n), n)
                ax.fill_between(rate, low, high, step="post", color=f"C{i - 1}", alpha=0.3, lw=0)
                ax.step(rate, eff, where="post", color=f"C{i - 1}", lw=1, label=self.class_names[i])
            for r in self.rates_khz:
                ax.axvline(r, color="grey", lw=1, ls=":")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlim(0.1, self.collision_mhz * 1e3)
            ax.set_ylim(1e-4, 1.0)
            ax.set_xlabel(f"trigger rate [kHz] (of {self.collision_mhz:g} MHz)")
            ax.set_title(f"{words[kind]} (bands: 68 % intervals)", fontsize=9)
        axes[0][0].set_ylabel("signal efficiency")
        axes[0][0].legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        fig.savefig(out_dir / "efficiency_vs_rate.png", dpi=110)
        plt.close(fig)
        return ["score_distributions.png", "efficiency_vs_rate.png"]

    def summary_lines(self, metrics: dict[str, Any]) -> list[str]:
        """Thresholds per model, efficiencies and AUCs side by side, the 10 % check, saturation counts."""
        ms = {k: metrics[k] for k in KINDS if metrics.get(k)}
        if not ms:
            return []
        first = next(iter(ms.values()))
        keys = list(first["thresholds"])
        signals = list(first["roc_auc"])
        source = first.get("background_source") or {}
        check = first["calibration"]
        split = (f"; each rate verified two-fold on halves of {check['halves'][0]} and {check['halves'][1]} "
                 f"crossings{' (split by pileup library)' if check['split_by_group'] else ''}"
                 if check.get("halves") else "")
        lines = [f"Anomaly score type `{self.score_type.hls()}`; the trigger fires when score > threshold. "
                 f"Thresholds are set on **{first['n_background']} background crossings** "
                 f"({source.get('what', 'held-out background')} of `{source.get('file', '?')}`) at "
                 f"{first['collision_rate_mhz']:g} MHz{split}. The firmware threshold is the C simulation's "
                 "(equal to the emulator's), as the raw integer the comparator holds; intervals are 68 % "
                 "Clopper-Pearson.", ""]
        if "missing" in source:
            lines += [f"**The calibration file `{source['missing']}` is absent**: these thresholds rest on the "
                      "test split alone (see the warnings).", ""]
        lines += ["| model | rate | threshold | raw integer | passing (allowed) | rate [kHz] | verified rate [kHz] "
                  "| design effect | verified, clustered [kHz] |",
                  "|---|---|---|---|---|---|---|---|---|"]

        def interval(values: list[float]) -> str:
            return f"[{values[0]:.3g}, {values[1]:.3g}]"

        for kind, m in ms.items():
            for key in keys:
                t = m["thresholds"][key]
                raw = "-" if t["raw"] is None else str(t["raw"])
                v = t["verification"] or {}
                verified = (f"{v['rate_khz']:.3g} {interval(v['rate_interval_khz'])}" if v else "-")
                effect = f"{v['design_effect']:.1f}" if "design_effect" in v else "-"
                clustered = interval(v["rate_interval_khz_clustered"]) if "design_effect" in v else "-"
                lines.append(f"| {kind} | {key} | {t['value']:.6g} | {raw} | {t['background_pass']} "
                             f"({t['allowed_background']}) | {t['achieved_rate_khz']:.3g} "
                             f"{interval(t['rate_interval_khz'])} | {verified} | {effect} | {clustered} |")
        head = (" | ".join(f"AUC {k}" for k in ms) + " | "
                + " | ".join(f"eff {key} {k}" for key in keys for k in ms))
        lines += ["", f"| signal | events | {head} |",
                  "|---|---|" + "---|" * (len(ms) + len(keys) * len(ms))]
        for s in signals:
            aucs = " | ".join(f"{m['roc_auc'][s]:.4f}" for m in ms.values())
            effs = " | ".join(f"{m['efficiency'][s][key]:.4f} {interval(m['efficiency_interval'][s][key])}"
                              for key in keys for m in ms.values())
            lines.append(f"| {s} | {first['n_signal'][s]} | {aucs} | {effs} |")
        if "float" in ms:
            lines.append("")
            ref, n_sig = ms["float"]["efficiency"], first["n_signal"]
            # A relative difference means something only where the float efficiency is measured to 10 %.
            testable = [(s, key) for s in signals for key in keys if ref[s][key] * n_sig[s] >= MIN_PASSING]
            untested = [f"{s} at {key}" for s in signals for key in keys if (s, key) not in testable]
            for kind in (k for k in ("quantized", "csim") if k in ms and testable):
                eff = ms[kind]["efficiency"]
                worst = max((abs(eff[s][key] / ref[s][key] - 1), s, key) for s, key in testable)
                verdict = "within" if worst[0] <= 0.1 else "outside"
                lines.append(f"- {kind} vs float efficiency: largest relative difference {worst[0]:.1%} "
                             f"({worst[1]} at {worst[2]}) -> **{verdict} 10 %**")
            if untested:
                lines.append(f"- not compared (fewer than {MIN_PASSING} float-model signal events pass, the "
                             f"efficiency is not known to 10 %): {', '.join(untested)}")
        lines += ["", "| class | " + " | ".join(f"saturated {k}" for k in ms) + " | score range (last) |",
                  "|---|" + "---|" * (len(ms) + 1)]
        last = list(ms.values())[-1]
        for c in ["background", *signals]:
            sat = " | ".join(str(m["saturated"][c]) for m in ms.values())
            lo, hi = last["range"][c]
            lines.append(f"| {c} | {sat} | {lo:.6g} .. {hi:.6g} |")
        below = all(m["thresholds_below_top"] for m in ms.values())
        consequence = ("below it, so a saturated score still fires" if below
                       else "AT it: saturation loses events")
        lines.append(f"\nTop code {self.score_type.top:g}: every threshold is {consequence}.")
        return lines


class Autoencoder(AnomalyDetector):
    """Dense autoencoder; the firmware outputs the squared reconstruction error of the on-grid inputs."""

    name = "autoencoder"
    chip_layers = "autoencoder"
    default_latent = 4

    def _read_architecture(self, arch: Section) -> None:
        self.reconstruction_type = _fixed(arch, "reconstruction_type", FixedType(12, 5))
        self.difference = _fixed(arch, "difference_type", FixedType(10, 4))

    def quantized_dense(self) -> list[str]:
        return ([f"enc{i + 1}" for i in range(len(self.encoder))] + ["latent"]
                + [f"dec{i + 1}" for i in range(len(self.decoder))] + ["recon"])

    def _squared_operand(self) -> tuple[FixedType, int, str]:
        return self.difference, N_INPUTS, "model.architecture.difference_type"

    def rounded_outputs(self) -> dict[str, FixedType]:
        return {"latent": self.cfg.quantization.for_layer("latent").activation,
                "recon": self.reconstruction_type}

    def build(self, quantized: bool) -> keras.Model:
        from tensorflow import keras

        inputs = keras.Input((N_INPUTS,), name="objects")
        x = inputs
        for i, units in enumerate(self.encoder):
            x = self._relu(f"enc{i + 1}", self._dense(f"enc{i + 1}", units, x, quantized), quantized)
        x = self._rounded_dense("latent", self.latent, x, quantized)
        for i, units in enumerate(self.decoder):
            x = self._relu(f"dec{i + 1}", self._dense(f"dec{i + 1}", units, x, quantized), quantized)
        x = self._rounded_dense("recon", N_INPUTS, x, quantized)
        return keras.Model(inputs, x, name=self.cfg.name)

    def firmware_model(self, model: keras.Model) -> keras.Model:
        """Input and reconstruction -> rounded difference -> sum of squares -> score."""
        from tensorflow import keras

        quantized = self.is_quantized(model)
        diff = keras.layers.Subtract(name="diff")([model.input, model.output])
        if quantized:
            diff = self._round("diff_q", diff, self.difference)
        return keras.Model(model.input, self._score(diff, quantized), name=model.name)

    def configure_hls(self, hls_config: dict[str, Any], firmware_model: keras.Model) -> None:
        """The Subtract holds input minus reconstruction exactly; `diff_q` then rounds it (see base)."""
        super().configure_hls(hls_config, firmware_model)
        width, integer = difference_type(self.cfg.quantization.input, self.reconstruction_type)
        hls_config["LayerName"].setdefault("diff", {}).setdefault("Precision", {})["result"] = \
            f"ap_fixed<{width},{integer}>"


class VariationalAutoencoder(AnomalyDetector):
    """AXOL1TL-style VAE: trained with reconstruction + KL; the firmware is the encoder and ||mu||^2."""

    name = "vae"
    chip_layers = "on-chip encoder"
    default_latent = 8  # with 3-4 the l1 VAE's ||mu||^2 barely separates even Z' -> ll

    def _read_architecture(self, arch: Section) -> None:
        # relative to the per-feature MSE; from about 0.03 on, mu collapses to 0 on the l1 data
        self.kl_weight = arch.number("kl_weight", 0.001, minimum=0.0, exclusive_minimum=True)

    def quantized_dense(self) -> list[str]:
        return [f"enc{i + 1}" for i in range(len(self.encoder))] + ["mu"]

    def _squared_operand(self) -> tuple[FixedType, int, str]:
        mu = self.cfg.quantization.for_layer("mu").activation
        return mu, self.latent, "quantization.layers.mu.activation"

    def rounded_outputs(self) -> dict[str, FixedType]:
        return {"mu": self.cfg.quantization.for_layer("mu").activation}

    def custom_objects(self) -> dict[str, Any]:
        return {"KLSampling": kl_sampling_class()}

    def build(self, quantized: bool) -> keras.Model:
        """Quantized encoder and mu (they go on chip); float log-variance and decoder (training only)."""
        from tensorflow import keras

        inputs = keras.Input((N_INPUTS,), name="objects")
        x = inputs
        for i, units in enumerate(self.encoder):
            x = self._relu(f"enc{i + 1}", self._dense(f"enc{i + 1}", units, x, quantized), quantized)
        mu = self._rounded_dense("mu", self.latent, x, quantized)
        log_var = keras.layers.Dense(self.latent, name="log_var")(x)
        z = kl_sampling_class()(self.kl_weight, name="sampling")([mu, log_var])
        for i, units in enumerate(self.decoder):
            z = keras.layers.Dense(units, activation="relu", name=f"dec{i + 1}")(z)
        outputs = keras.layers.Dense(N_INPUTS, name="recon")(z)
        return keras.Model(inputs, outputs, name=self.cfg.name)

    def firmware_model(self, model: keras.Model) -> keras.Model:
        """The encoder up to (rounded) mu, then ||mu||^2."""
        from tensorflow import keras

        quantized = self.is_quantized(model)
        mu = model.get_layer("mu_q" if quantized else "mu").output
        return keras.Model(model.input, self._score(mu, quantized), name=model.name)


_KL_SAMPLING: list[type] = []


def kl_sampling_class() -> type:
    """The VAE's sampling layer, defined on first use so that importing this module needs no TensorFlow."""
    if _KL_SAMPLING:
        return _KL_SAMPLING[0]
    import tensorflow as tf

    class KLSampling(tf.keras.layers.Layer):
        """z = mu + exp(log_var / 2) * eps while training (mu otherwise); adds kl_weight * KL(q || N(0, 1)).

        The KL term enters through `add_loss`, so the pipeline trains the VAE like any model with y = x.
        """

        def __init__(self, kl_weight: float, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.kl_weight = kl_weight

        def call(self, inputs: list[tf.Tensor], training: bool | None = None) -> tf.Tensor:
            mu, log_var = inputs
            log_var = tf.clip_by_value(log_var, -10.0, 10.0)  # keeps exp() finite early in training
            kl_event = tf.reduce_sum(1.0 + log_var - tf.square(mu) - tf.exp(log_var), axis=-1)
            kl = -0.5 * tf.reduce_mean(kl_event)
            self.add_loss(self.kl_weight * kl)
            self.add_metric(kl, name="kl")
            sampled = mu + tf.exp(0.5 * log_var) * tf.random.normal(tf.shape(mu))
            return tf.keras.backend.in_train_phase(sampled, mu, training=training)

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "kl_weight": self.kl_weight}

    _KL_SAMPLING.append(KLSampling)
    return KLSampling

