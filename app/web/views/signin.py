"""Sign-in and sign-out pages."""

import logging

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from app.web import auth
from app.web.templating import render

logger = logging.getLogger(__name__)

router = APIRouter()

limiter = auth.FailureLimiter()


@router.get("/signin")
async def signin_page(request: Request, next: str = "/") -> Response:
    if auth.is_signed_in(request):
        return RedirectResponse(auth.safe_next(next), status_code=303)
    return render(request, "signin.html", next=auth.safe_next(next), error=None)


@router.post("/signin")
async def signin_submit(
    request: Request,
    password: str = Form(""),
    csrf: str = Form(""),
    next: str = Form("/"),
) -> Response:
    auth.check_csrf(request, csrf)
    address = auth.client_address(request)
    target = auth.safe_next(next)

    wait_s = limiter.retry_after_s(address)
    if wait_s:
        logger.warning("sign-in rejected, too many failures client=%s", address)
        message = f"Too many failed sign-ins from {address}; try again in {wait_s} s."
        response = render(request, "signin.html", 429, next=target, error=message)
        response.headers["Retry-After"] = str(wait_s)
        return response

    settings = request.app.state.settings
    if not auth.password_matches(settings, password):
        limiter.record_failure(address)
        logger.warning("sign-in failed client=%s", address)
        # 200, not 401, because the form is the response and a 401 would need a
        # WWW-Authenticate challenge, which form-based sign-in does not have.
        return render(request, "signin.html", next=target, error="Wrong password.")

    limiter.reset(address)
    # A fresh session on sign-in, so a token planted before it is not kept.
    request.session.clear()
    request.session[auth.SESSION_KEY] = True
    logger.info("sign-in client=%s", address)
    return RedirectResponse(target, status_code=303)


@router.post("/signout")
async def signout(request: Request, csrf: str = Form("")) -> Response:
    auth.check_csrf(request, csrf)
    request.session.clear()
    return RedirectResponse("/signin", status_code=303)
