"""Tiny Darknet cfgs for the trainer tests (64 px input, 6 classes, one [yolo] head), written here so the tests run
in seconds on CPU."""


def tiny_cfg(bn: bool = True, width: int = 8) -> str:
    bn_line = "batch_normalize=1\n" if bn else ""
    convs = "".join(f"[convolutional]\n{bn_line}filters={width * (1 + (i > 1))}\nsize=3\nstride=2\npad=1\n"
                    f"activation=leaky\n\n" for i in range(5))
    return ("[net]\nwidth=64\nheight=64\nchannels=3\n\n" + convs +
            "[convolutional]\nsize=1\nstride=1\npad=1\nfilters=33\nactivation=linear\n\n"
            "[yolo]\nmask=0,1,2\nanchors=10,14, 23,27, 37,58\nclasses=6\nnum=3\n")
