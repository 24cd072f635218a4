from cnnedge.package import Package


def test_trained_package_is_usable(trained_package):
    pkg = Package.load(trained_package)
    pkg.require("model.keras")
    assert pkg.input_shape == (28, 28, 1)
    assert pkg.metadata["metrics"]["test_accuracy"] > 0.5, pkg.metadata["metrics"]
