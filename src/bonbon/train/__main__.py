"""``python -m bonbon.train`` (also under ``accelerate launch -m bonbon.train``)."""

from bonbon.train.launch import main

main()
