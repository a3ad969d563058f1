"""Localisation: Captum attributions of MKD's score, their post-processing, and the `localize` stage."""
