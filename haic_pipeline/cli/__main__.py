from haic_pipeline.cli.main import program

# guarded: worker processes (quality/speed/parallel.py, spawned) import the main module again
if __name__ == "__main__":
    program()
