# The entry point gunicorn looks for: `wsgi:app`. To serve another algorithm, import its module
# here instead of predictor.
import predictor as myapp

app = myapp.app
