"""Stage: quantization-aware training (QKeras) and the float twin, with one seeded, reproducible loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trigger.config import TrainingConfig

if TYPE_CHECKING:
    from tensorflow import keras

    from trigger.families.base import ModelFamily, Prepared


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow, and ask TensorFlow for deterministic kernels."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def fit(model: keras.Model, family: ModelFamily, data: Prepared, tcfg: TrainingConfig, *, epochs: int,
        learning_rate: float | None = None, callbacks: list[Any] | None = None,
        progress: bool = False) -> dict[str, list]:
    """Compile and train `model` on the training split with early stopping on the validation split;
    `progress` shows a bar over the epochs."""
    import tensorflow as tf

    if progress:
        from tqdm.keras import TqdmCallback

        callbacks = [*(callbacks or []), TqdmCallback(verbose=0, leave=False)]

    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate or tcfg.learning_rate), **family.compile_args())
    stop = tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=tcfg.patience, restore_best_weights=True)
    history = model.fit(
        data.train.x, data.train.y, validation_data=(data.val.x, data.val.y),
        epochs=epochs, batch_size=tcfg.batch_size, shuffle=True, verbose=0,
        callbacks=[stop, *(callbacks or [])],
    )
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def train(family: ModelFamily, data: Prepared, tcfg: TrainingConfig, *, quantized: bool,
          progress: bool = False, start_from: keras.Model | None = None) -> tuple[keras.Model, dict[str, list]]:
    """Build and train one model of the family from the config's seed; `start_from` (the trained float
    twin) gives the initial weights of every layer with the same name and shapes."""
    seed_everything(tcfg.seed)
    model = family.build(quantized=quantized)
    if start_from is not None:
        for layer in model.layers:
            weights = layer.get_weights()
            try:
                source = start_from.get_layer(layer.name).get_weights()
            except ValueError:
                continue
            if weights and [w.shape for w in weights] == [w.shape for w in source]:
                layer.set_weights(source)
    history = fit(model, family, data, tcfg, epochs=tcfg.epochs, progress=progress)
    return model, history
