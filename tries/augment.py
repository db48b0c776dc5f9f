"""4. GaussianDropout, AlphaDropout and RandomFlip/RandomRotation augmentation."""

import keras


def dropouts():
    """GaussianDropout and AlphaDropout on features."""
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(16, activation="selu"),
            keras.layers.GaussianDropout(0.2),
            keras.layers.Dense(16, activation="selu"),
            keras.layers.AlphaDropout(0.2),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )


def augmentation():
    """RandomFlip and RandomRotation on 8x8 images."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.RandomFlip("horizontal"),
            keras.layers.RandomRotation(0.1),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )


def mixup():
    """MixUp: its mix weight is a beta draw (backend's generator), its partner a shuffle."""
    return keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.MixUp(alpha=0.4),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
