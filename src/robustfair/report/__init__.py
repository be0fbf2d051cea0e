"""Tables, plots and the HTML report built from run directories."""
