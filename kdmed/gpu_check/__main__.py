"""`python -m kdmed.gpu_check`: see the package docstring."""

from kdmed.gpu_check import main

if __name__ == "__main__":  # spawned DDP workers import this module as __mp_main__ and must not rerun it
    main()
