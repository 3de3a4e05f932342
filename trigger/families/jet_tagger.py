"""Jet tagger: 16 substructure features -> q / g / W / Z / t, the hls4ml LHC jet-tagging benchmark.

Inputs are standardised with the training split's mean and standard deviation (the upstream jet
reconstruction delivers them standardised, on the input grid); the firmware outputs the five logits,
whose argmax is the tag. The softmax is stripped from the firmware by default (`hls.softmax: strip`):
it does not change the argmax, costs tables and cycles, and hls4ml's table softmax is not bit-exact.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trigger.config import Section
from trigger.errors import ConfigError
from trigger.families.base import ModelFamily, Prepared, Split

if TYPE_CHECKING:
    from tensorflow import keras

    from trigger.config import Config
    from trigger.data import Dataset

N_FEATURES = 16
CLASSES = ["q", "g", "W", "Z", "t"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Float64 softmax: per-class scores for one-vs-rest ROC curves."""
    z = np.asarray(logits, dtype=np.float64)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


class JetTagger(ModelFamily):
    name = "jet_tagger"
    datasets = ("jets",)

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        arch = Section(cfg.model.architecture, "model.architecture")
        hidden = arch.get("hidden", [64, 32, 32])
        if (not isinstance(hidden, list) or not hidden
                or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden)):
            raise ConfigError("model.architecture.hidden", f"must be a list of positive integers, got {hidden!r}")
        self.hidden: list[int] = hidden
        arch.finish()
        for name in cfg.quantization.layers:
            if name not in self.dense_layers():
                raise ConfigError(f"quantization.layers.{name}",
                                  f"not a layer of the jet tagger ({', '.join(self.dense_layers())})")
        prep = Section(cfg.model.preprocessing, "model.preprocessing")
        self.standardise = prep.boolean("standardise", True)
        prep.finish()
        Section(cfg.evaluation, "evaluation").finish()
        self.mean = np.zeros(N_FEATURES)
        self.std = np.ones(N_FEATURES)

    def dense_layers(self) -> list[str]:
        """Names of the QDense layers, the ones `quantization.layers` may set."""
        return [f"fc{i + 1}" for i in range(len(self.hidden))] + ["output"]

    def prepare(self, data: Dataset) -> Prepared:
        if data.name not in self.datasets:
            raise ConfigError("data.file", f"{data.path}: holds the {data.name!r} dataset; the jet tagger needs 'jets'")
        train = data.train["features"].astype(np.float64)
        if self.standardise:
            self.mean = train.mean(axis=0)
            self.std = np.where(train.std(axis=0) > 0, train.std(axis=0), 1.0)

        return Prepared(
            self.events(data.train), self.events(data.val), self.events(data.test),
            input_names=list(data.feature_names), output_names=[f"logit_{c}" for c in CLASSES],
            preprocessing={
                "kind": "standardise" if self.standardise else "none",
                "mean": self.mean.tolist(), "std": self.std.tolist(),
                "where": "upstream of the firmware: inputs arrive standardised, on the input grid",
            },
        )

    def events(self, arrays: dict[str, np.ndarray]) -> Split:
        x = ((arrays["features"] - self.mean) / self.std).astype(np.float32)
        labels = arrays["label"].astype(np.int64)
        return Split(x, np.eye(len(CLASSES), dtype=np.float32)[labels], {"label": labels})

    def restore_preprocessing(self, preprocessing: dict[str, Any]) -> None:
        self.mean = np.asarray(preprocessing["mean"], dtype=np.float64)
        self.std = np.asarray(preprocessing["std"], dtype=np.float64)

    def build(self, quantized: bool) -> keras.Model:
        from qkeras import QActivation, QDense, quantized_bits, quantized_relu
        from tensorflow import keras

        inputs = keras.Input((N_FEATURES,), name="inputs")
        x = inputs
        names = self.dense_layers()
        widths = [*self.hidden, len(CLASSES)]
        for i, (name, width) in enumerate(zip(names, widths, strict=True)):
            last = i == len(widths) - 1
            if quantized:
                q = self.cfg.quantization.for_layer(name)
                x = QDense(width, name=name,
                           kernel_quantizer=quantized_bits(q.weight.bits, q.weight.integer, alpha=1),
                           bias_quantizer=quantized_bits(q.bias.bits, q.bias.integer, alpha=1))(x)
                if not last:
                    x = QActivation(quantized_relu(q.activation.bits, q.activation.integer),
                                    name=f"relu{i + 1}")(x)
            else:
                x = keras.layers.Dense(width, name=name)(x)
                if not last:
                    x = keras.layers.Activation("relu", name=f"relu{i + 1}")(x)
        outputs = keras.layers.Activation("softmax", name="softmax")(x)
        return keras.Model(inputs, outputs, name=self.cfg.name)

    def compile_args(self) -> dict[str, Any]:
        return {"loss": "categorical_crossentropy", "metrics": ["accuracy"]}

    def firmware_model(self, model: keras.Model) -> keras.Model:
        """Strip the final softmax unless the config keeps it (argmax and AUC need only the logits): a
        softmax Activation layer is cut off; a softmax inside the last Dense (common in users' models)
        is replaced by a linear copy of that layer with the same weights."""
        from tensorflow import keras

        last = model.layers[-1]
        if self.cfg.hls.softmax == "keep" or last.get_config().get("activation") != "softmax":
            return model
        if isinstance(last, keras.layers.Activation):
            return keras.Model(model.inputs, last.input, name=model.name)
        config = {**last.get_config(), "activation": "linear"}
        linear = type(last).from_config(config)
        outputs = linear(last.input)
        linear.set_weights(last.get_weights())
        return keras.Model(model.inputs, outputs, name=model.name)

    def evaluate(self, outputs: np.ndarray | list[np.ndarray], split: Split) -> dict[str, Any]:
        from sklearn.metrics import roc_auc_score

        scores = np.asarray(outputs)
        probs = scores if self._outputs_are_probabilities(scores) else softmax(scores)
        labels = split.meta["label"]
        pred = probs.argmax(axis=1)
        auc = {c: float(roc_auc_score(labels == k, probs[:, k])) for k, c in enumerate(CLASSES)}
        return {
            "events": len(labels),
            "accuracy": float(np.mean(pred == labels)),
            "auc": auc,
            "mean_auc": float(np.mean(list(auc.values()))),
        }

    @staticmethod
    def _outputs_are_probabilities(scores: np.ndarray) -> bool:
        return bool(np.all(scores >= 0) and np.allclose(scores.sum(axis=1), 1.0, atol=1e-2))

    def plots(self, outputs: dict[str, Any], split: Split, out_dir: Path) -> list[str]:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt
        from sklearn.metrics import confusion_matrix, roc_curve

        labels = split.meta["label"]
        written = []
        fig, ax = plt.subplots(figsize=(6, 5))
        styles = {"float": ":", "quantized": "--", "csim": "-"}
        for kind, raw in outputs.items():
            scores = np.asarray(raw)
            probs = scores if self._outputs_are_probabilities(scores) else softmax(scores)
            for k, c in enumerate(CLASSES):
                fpr, tpr, _ = roc_curve(labels == k, probs[:, k])
                ax.plot(tpr, fpr, styles.get(kind, "-"), color=f"C{k}",
                        label=f"{c} ({kind})" if kind == "csim" else None)
        ax.set_yscale("log")
        ax.set_xlabel("signal efficiency")
        ax.set_ylabel("mistag rate")
        ax.set_title("ROC per class: dotted float, dashed QKeras, solid C simulation")
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "roc.png", dpi=110)
        plt.close(fig)
        written.append("roc.png")

        kind = "csim" if "csim" in outputs else next(iter(outputs))
        pred = np.asarray(outputs[kind]).argmax(axis=1)
        cm = confusion_matrix(labels, pred, labels=range(len(CLASSES)), normalize="true")
        fig, ax = plt.subplots(figsize=(5, 4.5))
        im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(CLASSES)):
            for j in range(len(CLASSES)):
                ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center",
                        color="white" if cm[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(CLASSES)), CLASSES)
        ax.set_yticks(range(len(CLASSES)), CLASSES)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"confusion matrix ({kind})")
        fig.colorbar(im)
        fig.tight_layout()
        fig.savefig(out_dir / "confusion.png", dpi=110)
        plt.close(fig)
        written.append("confusion.png")
        return written

    def summary_lines(self, metrics: dict[str, Any]) -> list[str]:
        lines = ["| model | accuracy | mean AUC | " + " | ".join(f"AUC {c}" for c in CLASSES) + " |",
                 "|---|---|---|" + "---|" * len(CLASSES)]
        for kind, m in metrics.items():
            if m is None:
                continue
            aucs = " | ".join(f"{m['auc'][c]:.4f}" for c in CLASSES)
            lines.append(f"| {kind} | {m['accuracy']:.4f} | {m['mean_auc']:.4f} | {aucs} |")
        return lines
