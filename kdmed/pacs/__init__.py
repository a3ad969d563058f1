"""Into the hospital: studies from a PACS over DICOMweb, results back as DICOM SEG and Key Object Selection.

    kdmed pacs list  --url http://127.0.0.1:8042/dicom-web
    kdmed pacs score --url ... --study UID --model models/brain/stpm/model.safetensors
    kdmed pacs watch --url ... --model ... --state pacs-state.json

`kdmed.pacs.orthanc` starts a development Orthanc (`make pacs`); the tests run against it.
"""
