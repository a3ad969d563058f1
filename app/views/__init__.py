"""The review app's views: each draws one part of the page from what `app.state` returns."""
