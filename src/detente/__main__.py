from detente.cli.main import app

app()
