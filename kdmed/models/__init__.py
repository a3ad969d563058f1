"""Networks: shared teacher/student backbones (``backbones``, ``efficientnet_lite``, ``weights``), one module
per method (network, loss, anomaly map; ``registry`` lists them), and what their maps share: post-processing
(``maps``) and the Captum attribution of MKD's score (``attribution``)."""
