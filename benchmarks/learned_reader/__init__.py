"""A learned rPPG reader used as an independent judge (issue 21, item 3): PhysNet.

Not part of the library: a judge, not a product. ``physnet`` is the network (Yu, Li, Zhao,
BMVC 2019, reduced widths for CPU training), ``crops`` cuts the face crops it reads from our
face tracker, ``data`` renders its training clips (synthetic subjects and real clips edited
to known heart rates), ``train`` fits and saves it (safetensors, under
``~/.cache/physiolatent/``), ``reader`` loads it and reads a clip's HR.
"""
