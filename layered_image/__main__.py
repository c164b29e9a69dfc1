from layered_image.cli import run

run()
