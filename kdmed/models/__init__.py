"""Networks: shared teacher/student backbones (``backbones``, ``efficientnet_lite``, ``weights``) and one
module per method (network, loss, anomaly map)."""
