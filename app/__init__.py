"""The review app (`streamlit run app/main.py`): `state` holds and computes, `views` draw."""
