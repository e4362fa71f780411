from gpuhive.errors import GpuhiveError, TokenExpired, error_class, from_dict
from gpuhive.overlay.errors import AddressPoolExhausted
from gpuhive.train.placement import PlacementError


def test_errors_from_the_wire_keep_their_class_wherever_it_is_defined() -> None:
    assert error_class(TokenExpired.code) is TokenExpired
    assert error_class(AddressPoolExhausted.code) is AddressPoolExhausted
    assert error_class(PlacementError.code) is PlacementError
    err = from_dict({"code": AddressPoolExhausted.code, "message": "full", "hint": "grow it",
                     "data": {"subnet": "10.77.0.0/30"}})
    assert isinstance(err, AddressPoolExhausted)
    assert (err.message, err.hint, err.data["subnet"]) == ("full", "grow it", "10.77.0.0/30")


def test_unknown_codes_fall_back_to_the_base_class() -> None:
    assert type(from_dict({"code": "from-the-future", "message": "?"})) is GpuhiveError
