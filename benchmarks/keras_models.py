"""The seed notebooks' Keras models and schedule, for the benchmarks that run the seed's own stack
side by side with modescape (TensorFlow is a benchmark-only dependency: `pip install
tensorflow-cpu`; scripts that import this module exit cleanly without it).

The architectures follow the seed notebooks (Keras defaults: glorot-uniform kernels, zero biases,
Adam epsilon 1e-7) and match modescape's `variant="seed"` builders layer for layer.
"""

from __future__ import annotations

import os
import sys
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow(threads: int | None = None) -> Any:
    """TensorFlow, or a clean exit naming the install command when it is absent."""
    try:
        import tensorflow as tf
    except ImportError:
        print("TensorFlow is not installed: pip install tensorflow-cpu (benchmark-only).")
        sys.exit(0)
    if threads is not None:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    return tf


def keras_model(tf: Any, arch: str, variant: str = "seed", dropout: float = 0.1) -> Any:
    """SmallCNN / MediumCNN (seed or paper variant) or ResNet20v1 as Keras builds them, with a
    softmax output as the notebooks compile it; layer for layer modescape's builders."""
    L = tf.keras.layers
    if arch == "resnet20":
        return _resnet20(tf)
    glorot = "glorot_uniform"
    # The authors' TF1 xavier_initializer also drew the paper variants' biases.
    bias = glorot if variant == "paper" else "zeros"
    layers: list[Any] = [L.Input((32, 32, 3))]
    if arch == "smallcnn":
        for width in (16, 32, 32):
            layers += [
                L.Conv2D(width, 3, padding="same", activation="relu", bias_initializer=bias),
                L.MaxPooling2D(2),
            ]
        if variant == "paper":
            return tf.keras.Sequential([*layers, L.Flatten(), L.Dense(10, "softmax")])
    elif arch == "mediumcnn" and variant == "paper":
        for i, width in enumerate((64, 128, 256, 256)):
            layers += [
                L.Conv2D(width, 3, padding="same", bias_initializer=bias),
                L.Dropout(dropout),
                L.MaxPooling2D(2, padding="same"),
            ]
            if i < 3:
                layers.append(L.ReLU())
        flat = [L.Flatten(), L.Dense(10, "softmax", bias_initializer=bias)]
        return tf.keras.Sequential([*layers, *flat])
    elif arch == "mediumcnn":
        for width, pad in ((32, "same"), (64, "valid"), (128, "same"), (128, "same")):
            layers += [
                L.Conv2D(width, 3, padding=pad, activation="relu"),
                L.Dropout(dropout),
                L.MaxPooling2D(2),
            ]
    else:
        raise ValueError(f"unknown architecture {arch!r}: smallcnn, mediumcnn or resnet20")
    layers += [
        L.GlobalAveragePooling2D(),
        L.Dense(32, activation="relu"),
        L.Dropout(dropout),
        L.Dense(10, activation="softmax"),
    ]
    return tf.keras.Sequential(layers)


def seed_model(tf: Any, arch: str, dropout: float = 0.1) -> Any:
    """The seed notebooks' SmallCNN or MediumCNN."""
    return keras_model(tf, arch, "seed", dropout)


def _resnet20(tf: Any) -> Any:
    """ResNet20v1 after the Keras CIFAR-10 example (He-normal convs, BN, 1×1 projections)."""
    L = tf.keras.layers

    def conv_bn(x, width, kernel=3, strides=1, relu=True, bn=True):
        x = L.Conv2D(width, kernel, strides, padding="same", kernel_initializer="he_normal")(x)
        x = L.BatchNormalization()(x) if bn else x
        return L.ReLU()(x) if relu else x

    inputs = L.Input((32, 32, 3))
    x = conv_bn(inputs, 16)
    for stage, width in enumerate((16, 32, 64)):
        for block in range(3):
            strides = 2 if stage > 0 and block == 0 else 1
            y = conv_bn(conv_bn(x, width, strides=strides), width, relu=False)
            if strides != 1:
                x = conv_bn(x, width, 1, strides, relu=False, bn=False)
            x = L.ReLU()(L.Add()([x, y]))
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(10, "softmax", kernel_initializer="he_normal")(x)
    return tf.keras.Model(inputs, outputs)


def seed_lr(epoch: int) -> float:
    """The seed schedule; `epoch` 0-based as Keras' LearningRateScheduler passes it. 1-based epochs
    1-9: 1.6e-3, 10-19: 8e-4, 20-29: 4e-4, 30-40: 2e-4 (the last stage lasts 11 epochs)."""
    return 1.6e-3 / 2 ** min(3, (epoch + 1) // 10)


def compile_seed(tf: Any, model: Any) -> Any:
    model.compile(
        optimizer=tf.keras.optimizers.Adam(learning_rate=seed_lr(0)),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model
