"""`kdmed score-archive`: score every study of a folder tree or manifest on a Dask cluster.

    from kdmed.archive import find_studies, score_archive
    studies = find_studies("archive/")                 # [StudyRef, ...], one per NIfTI, DICOM folder, zip, image
    summary = score_archive("archive/", "models/brain/stpm/model.safetensors", "results/", workers=2)

One task per study, each through `kdmed.score.score_source` (the `kdmed score` path), on a
`dask.distributed.LocalCluster` or an existing scheduler. The results table (`results.csv`) is rewritten
atomically as results arrive; studies already in it are skipped on the next run.
"""

from kdmed.archive.discover import StudyRef, find_studies
from kdmed.archive.run import score_archive

__all__ = ["StudyRef", "find_studies", "score_archive"]
