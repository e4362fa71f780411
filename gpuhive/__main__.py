from gpuhive.cli.main import run

run()
